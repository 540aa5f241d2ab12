"""Live audio to transcript segments: the speech-engine interface and its engines.

The engines themselves need the ``speech`` extra (``pip install
'scribeline[speech]'``); this package's interface imports without it.
"""
