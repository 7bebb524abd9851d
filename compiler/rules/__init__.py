"""The semantic rules, one module per spec section. Importing this package registers them."""
