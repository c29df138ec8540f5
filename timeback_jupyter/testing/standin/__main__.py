"""``python -m timeback_jupyter.testing.standin --port 8765``: a stand-in Timeback by hand."""

from .server import main

if __name__ == "__main__":
    main()
