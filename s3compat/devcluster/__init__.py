"""s3compat/devcluster"""
