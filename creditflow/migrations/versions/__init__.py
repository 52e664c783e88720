"""One file per revision, oldest first; `creditflow db upgrade` applies them."""
