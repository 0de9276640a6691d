import os
import sys

# tests/fixtures holds random_weights.py, the weight recipe shared with the fixture generators
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
