-- Delivery workers wake when deliveries are written (PostgreSQL: a notification from
-- a trigger). SQLite has one server, which wakes its worker itself: nothing to do.
SELECT 1;
