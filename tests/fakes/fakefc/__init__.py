# SPDX-License-Identifier: MIT
"""Process-level fake of Firecracker's `firecracker` and `jailer` (see tests/fakes/README.md)."""
VERSION = "1.17.0-dev"
