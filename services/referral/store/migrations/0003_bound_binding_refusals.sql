-- referral: refused binds are bounded. Per (customer, promoter, reason) and day only the first
-- few refusals are stored and announced (BindingRefused); later ones are only counted here, so
-- a spammer cannot grow binding_refusals or the referral topic without limit.
CREATE TABLE binding_refusal_counts (
    customer_id text NOT NULL,
    promoter    text NOT NULL,      -- the promoter's id, or '' for a code that names no promoter
    reason      text NOT NULL,
    day         date NOT NULL,
    refusals    integer NOT NULL,
    PRIMARY KEY (customer_id, promoter, reason, day)
);
