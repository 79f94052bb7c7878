/* Removed once fs/ has sources. */
