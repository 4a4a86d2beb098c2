-- clickhook schema v11 (SQLite): email ids are never used twice. A tracked link's token names
-- its email by id, and SQLite gives a new row the largest id + 1: after the newest emails were
-- deleted (their prospect or campaign deleted), the next email took their id, and their old
-- links led to it, another prospect's email, even another account's. `record_email` takes
-- the id after `id_floor`, which only grows.
CREATE TABLE id_floor (name TEXT PRIMARY KEY, last INTEGER NOT NULL);
INSERT INTO id_floor (name, last) VALUES ('emails', max(
    coalesce((SELECT max(id) FROM emails), 0),
    coalesce((SELECT max(email_id) FROM clicks), 0)));
CREATE TRIGGER emails_id_floor AFTER INSERT ON emails BEGIN
    UPDATE id_floor SET last = max(last, NEW.id) WHERE name = 'emails';
END;
