from polyledger.cli import entry

entry()
