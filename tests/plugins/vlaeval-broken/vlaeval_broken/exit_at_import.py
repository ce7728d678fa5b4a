"""A plugin module that ends the process while it is imported, as a script-like module might."""

import sys

sys.exit("vlaeval_broken.exit_at_import is not meant to be imported")
