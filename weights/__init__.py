"""The models shipped with stransfer, installed as the package data of stransfer.shipped (see pyproject.toml)."""
