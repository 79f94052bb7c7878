-- SPDX-License-Identifier: MIT
-- The part of the platform's database that mvmfs uses (docs/contract.md, "Addresses and network").
--
-- mvmfs inserts a row for a VM name if none exists, reads ip_address, and when it is NULL
-- writes an address it generated inside the node's --ipv6-prefix. It never deletes rows and
-- never changes a non-NULL ip_address: the platform owns the rows (rmdir leaves them alone, so
-- a VM recreated under the same name gets the same address back).
--
-- Allocation is serialised by a transaction-level advisory lock (key 7887612084176384097,
-- "mvmfsipa") taken by every mvmfs node before it reads the table to pick a free address; see
-- net/ipam-pg.c. Anyone else writing ip_address directly should take the same lock:
--   BEGIN; SELECT pg_advisory_xact_lock(7887612084176384097); ... COMMIT;
--
-- ip_address is inet holding a single IPv6 address (/128). Values that are IPv4, networks
-- (another prefix length) or not addresses at all make mkdir of that VM fail with EINVAL.

CREATE TABLE IF NOT EXISTS instances (
	id         text PRIMARY KEY,  -- the VM name (mkdir /vms/NAME); ON CONFLICT (id) needs it
	ip_address inet               -- NULL until assigned
);

-- Defence in depth only: two rows can never share an address even if some writer skips the
-- advisory lock. mvmfs does not depend on it (its tests run with this index dropped).
CREATE UNIQUE INDEX IF NOT EXISTS instances_ip_address_key ON instances (ip_address);
