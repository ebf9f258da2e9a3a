"""The ground floor shared by both wings: catalogues, SGP4, frames."""
