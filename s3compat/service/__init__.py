"""s3compat/service"""
