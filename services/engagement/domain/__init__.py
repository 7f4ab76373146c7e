"""Rules of the promoter experience: plain values and functions, no I/O."""
