"""s3compat/api"""
