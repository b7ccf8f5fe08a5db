"""mmtok.train"""
