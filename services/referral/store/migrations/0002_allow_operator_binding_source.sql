-- An operator may change a customer's referrer (with a reason, carried by the event).
ALTER TABLE bindings DROP CONSTRAINT IF EXISTS bindings_source_check;
ALTER TABLE bindings ADD CONSTRAINT bindings_source_check CHECK (source IN ('poster', 'link', 'qr', 'operator'));
