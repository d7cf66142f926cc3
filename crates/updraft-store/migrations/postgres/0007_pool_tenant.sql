-- The tenant whose pool it is; NULL: shared by every tenant (default_pool and pools made by a
-- global Op or Admin).
ALTER TABLE pool ADD COLUMN tenant TEXT COLLATE "C";
