"""mmtok.data"""
