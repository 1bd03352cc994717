"""s3compat/nodes"""
