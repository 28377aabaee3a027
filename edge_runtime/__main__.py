"""`python -m fracture_edge.edge_runtime` runs the fracture-edge CLI."""
import sys

from .cli import main

sys.exit(main())
