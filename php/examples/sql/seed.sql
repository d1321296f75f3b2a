-- Deterministic seed data for the example shop: 50 customers, 200
-- products, 1000 orders with 1-5 items each.
INSERT INTO tax_rates (country, rate) VALUES ('DE', 0.19), ('AT', 0.20), ('NL', 0.21), ('FR', 0.20);

INSERT INTO customers (id, name, email, country)
SELECT i, 'Customer ' || i, 'customer' || i || '@example.com', (ARRAY['DE', 'AT', 'NL', 'FR'])[1 + i % 4]
FROM generate_series(1, 50) AS i;

INSERT INTO products (id, sku, name, price_cents)
SELECT i, 'SKU-' || lpad(i::text, 5, '0'), 'Product ' || i, 1000 + i * 37
FROM generate_series(1, 200) AS i;

INSERT INTO orders (id, customer_id, status, created_at)
SELECT i, 1 + i % 50, (ARRAY['new', 'paid', 'shipped'])[1 + i % 3], timestamptz '2026-01-01 00:00:00+00' + i * interval '1 hour'
FROM generate_series(1, 1000) AS i;

INSERT INTO order_items (order_id, product_id, qty, price_cents)
SELECT o, 1 + (o * 7 + n * 13) % 200, 1 + (o + n) % 3, 1000 + (1 + (o * 7 + n * 13) % 200) * 37
FROM generate_series(1, 1000) AS o, generate_series(1, 5) AS n
WHERE n <= 1 + o % 5
ORDER BY o, n;

ANALYZE;
