-- Each table belongs to one crate, which alone reads and writes it; another crate that needs its
-- data asks that crate's API. The comments say which.
COMMENT ON TABLE identities IS 'owned by agora-identity';
COMMENT ON TABLE app_keys IS 'owned by agora-identity';
COMMENT ON TABLE offers IS 'owned by agora-market';
COMMENT ON TABLE demands IS 'owned by agora-market';
COMMENT ON TABLE remote_offers IS 'owned by agora-market';
COMMENT ON TABLE proposals IS 'owned by agora-market';
COMMENT ON TABLE market_events IS 'owned by agora-market';
COMMENT ON TABLE agreements IS 'owned by agora-market';
COMMENT ON TABLE agreement_events IS 'owned by agora-market';
COMMENT ON TABLE market_outbox IS 'owned by agora-market';
COMMENT ON TABLE activities IS 'owned by agora-activity';

-- Activities learn of agreements through the market's API, not its table: the key into it goes.
ALTER TABLE activities DROP CONSTRAINT activities_agreement_id_fkey;

-- Agreements store their two final proposals as typed terms: the offer side now has the
-- timestamp of the provider's Draft, and the demand side the id of the requestor's proposal.
-- Rows from before are given what is known of them (the agreement's own time, and the demand
-- subscription in place of a proposal id), so they still read back.
UPDATE agreements SET offer = offer || jsonb_build_object('timestamp', created_at)
    WHERE NOT offer ? 'timestamp';
UPDATE agreements SET demand = demand || jsonb_build_object('proposalId', demand->'demandId')
    WHERE NOT demand ? 'proposalId';
UPDATE agreements SET offer = offer || jsonb_build_object('proposalId', offer->'offerId')
    WHERE NOT offer ? 'proposalId';
