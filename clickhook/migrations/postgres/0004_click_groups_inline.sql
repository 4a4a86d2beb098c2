-- clickhook schema v4 (PostgreSQL): a group's clicks stay in its row.
--
-- A group of a couple of dozen clicks is a row of 3-4 kB, over PostgreSQL's default 2 kB
-- target, so its user agents went to the TOAST table: a second heap tuple and index entry on
-- the click path's commit, read back when settling takes the group in. A group lives for
-- seconds, so it is kept whole up to a page (groups of ~60 clicks); bigger ones still move
-- their largest arrays out of line. Measured (7 alternating pairs of 10 s runs of
-- bench/click.sh's load): the click connection's PostgreSQL CPU 3.25 -> 3.07 µs per click,
-- lower in 5 pairs; throughput within the host's noise.
ALTER TABLE click_groups SET (toast_tuple_target = 8160);
