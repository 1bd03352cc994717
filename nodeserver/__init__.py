"""nodeserver"""
