"""The embedded hub: the whole hub on this machine, on moto, with no AWS account (``si hub start``).

Installed with the server's ``local`` extra; never imported by the deployed functions.
"""
