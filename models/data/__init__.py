"""Data sets: the two generated domains and the COCO-captions loader shared with users' data."""
