-- A plan's allowance in money (docs/PRICING.md, "Plan terms": `included_usage_micros` in the
-- plan's terms): the ledger writer keeps the period's usage charges before the allowance on
-- one more rating accumulator per tenant and period, model '*' and class 'included_usage', so
-- each event pays max(0, C + c - M) - max(0, C - M) and the period's charges telescope to
-- max(0, total - M).
ALTER TABLE rating_accumulators DROP CONSTRAINT rating_accumulators_token_class_check;
ALTER TABLE rating_accumulators ADD CONSTRAINT rating_accumulators_token_class_check
  CHECK (token_class ~ ('^(input|cached_input|cache_write|image_input|audio_input|output|'
                        || 'audio_output|requests)(>[1-9][0-9]*)?$')
         OR (token_class = 'included_usage' AND model = '*' AND NOT batch));
