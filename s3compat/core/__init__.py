"""s3compat/core"""
