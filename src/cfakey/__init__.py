"""cfakey: the command-line manager of the CFA keys (CFA_KEY) of the API Convergence."""

__version__ = "0.1.0"
