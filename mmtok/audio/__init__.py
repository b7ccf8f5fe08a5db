"""mmtok.audio"""
