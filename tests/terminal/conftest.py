"""harbor_wild/ and harbor_public_shapes/ hold task folders written in the public Harbor /
Terminal-Bench shapes; their own tests/test_outputs.py files are task data run inside sandboxes,
not tests of this project."""

collect_ignore_glob = ["harbor_wild/*", "harbor_public_shapes/*"]
