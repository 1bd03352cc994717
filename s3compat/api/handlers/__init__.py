"""s3compat/api/handlers"""
