"""s3compat/metadata"""
