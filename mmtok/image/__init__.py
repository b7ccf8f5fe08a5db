"""mmtok.image"""
