"""mmtok.video"""
