/* Removed once image/ has sources. */
