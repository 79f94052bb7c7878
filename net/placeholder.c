/* Removed once net/ has sources. */
