"""Entities: who and where a loan application is about."""

from feast import Entity, ValueType

applicant = Entity(
    name="applicant",
    join_keys=["dob_ssn"],
    value_type=ValueType.STRING,
    description="A person, keyed by date of birth and last four SSN digits.",
)

zipcode = Entity(
    name="zipcode",
    join_keys=["zipcode"],
    value_type=ValueType.INT64,
    description="The applicant's home zipcode.",
)
