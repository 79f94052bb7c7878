/* Removed once runtime/ has sources. */
