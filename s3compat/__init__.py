"""s3compat"""
