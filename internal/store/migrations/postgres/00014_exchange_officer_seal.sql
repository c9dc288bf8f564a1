-- +goose Up
-- Access records made from now on name their officer only by a salted
-- commitment (the record's officer_seal); the officer and the salt stay
-- beside the record in a version 2 opening (internal/exchange/index.go):
-- 0x02 ‖ nonce ‖ time ‖ deferral end ‖ person ‖ request ‖ agency ‖ purpose
-- ‖ officer (a length byte and the bytes) ‖ salt (16 bytes) ‖ record.
-- Version 1 openings stay as they are; nothing to change here.
SELECT 1;

-- +goose Down
-- The older code reads version 1 openings only: a version 2 opening loses
-- its officer and salt (the record, which the log commits to, is kept as
-- it is, so it still opens its entry; the older code shows no officer, and
-- 00012's Down, which remakes direct releases' request rows, leaves their
-- officer empty).
UPDATE tlog_entries e SET opening = '\x01'::bytea || substring(e.opening from 2 for 52 + x.n) || substring(e.opening from 71 + x.n + x.ol)
FROM (SELECT idx, n, get_byte(b, 53 + n) AS ol FROM (
        SELECT idx, b, pl + rl + al + get_byte(b, 52 + pl + rl + al) AS n FROM (
            SELECT idx, b, pl, rl, get_byte(b, 51 + pl + rl) AS al FROM (
                SELECT idx, b, pl, get_byte(b, 50 + pl) AS rl FROM (
                    SELECT idx, opening AS b, get_byte(opening, 49) AS pl FROM tlog_entries
                    WHERE kind = 4 AND opening IS NOT NULL AND get_byte(opening, 0) = 2) s1) s2) s3) s4) x
WHERE e.idx = x.idx;
