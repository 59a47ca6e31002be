-- Delivery workers wake when deliveries are written.
--
-- The run triggers of 0005 write `webhook_deliveries` in the same transaction as the
-- run's state change. Until now a worker learnt of them from the server's own run
-- signals, or at its next poll (every 500 ms): a state change made by another
-- process (an operator's SQL, a tool) waited for that poll. Every insert now
-- notifies `corral_webhooks`; PostgreSQL sends identical notifications of one
-- transaction once, at commit, so a burst of deliveries costs one wake-up per server.
CREATE FUNCTION corral_webhooks_notify() RETURNS TRIGGER AS $$
BEGIN
    PERFORM pg_notify('corral_webhooks', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER webhook_deliveries_notify
    AFTER INSERT ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION corral_webhooks_notify();
