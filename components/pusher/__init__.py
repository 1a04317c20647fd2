"""Pusher: copy a blessed model into the versioned model repository; optionally deploy it on KServe."""
