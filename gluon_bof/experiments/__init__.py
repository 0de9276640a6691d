"""Experiments built on the library, not part of it: the elephant in the room (Bag of Freebies,
Table 2 / Fig. 5), used by scripts/elephant_in_the_room.py."""
