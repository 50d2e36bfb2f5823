"""Each contender is a script: `python -m bench.contenders.X BOOTSTRAP SOURCE SINK COUNT`.

It prints one JSON line: {"records": n, "seconds": s}, where `seconds` runs from the
first record consumed to the moment every output record is acknowledged; start-up
and consumer-group join are excluded for every contender alike.
"""
