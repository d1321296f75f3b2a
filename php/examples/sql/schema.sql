-- Schema of the example shop (PostgreSQL).
CREATE TABLE customers (
    id      bigint PRIMARY KEY,
    name    text NOT NULL,
    email   text NOT NULL UNIQUE,
    country char(2) NOT NULL
);

CREATE TABLE products (
    id          bigint PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    price_cents integer NOT NULL CHECK (price_cents > 0)
);

CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status      text NOT NULL,
    created_at  timestamptz NOT NULL,
    view_count  integer NOT NULL DEFAULT 0
);

CREATE TABLE order_items (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES orders (id),
    product_id  bigint NOT NULL REFERENCES products (id),
    qty         integer NOT NULL CHECK (qty > 0),
    price_cents integer NOT NULL
);
CREATE INDEX order_items_order_id ON order_items (order_id);

CREATE TABLE tax_rates (
    country char(2) PRIMARY KEY,
    rate    numeric(5, 4) NOT NULL
);

CREATE TABLE search_terms (
    product_id bigint NOT NULL REFERENCES products (id),
    term       text NOT NULL,
    PRIMARY KEY (product_id, term)
);
