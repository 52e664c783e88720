"""Entities: who and where a loan application is about (keys from the data contract)."""

from feast import Entity, ValueType

from creditflow.contract import DOB_SSN, ZIPCODE

applicant = Entity(
    name="applicant",
    join_keys=[DOB_SSN.name],
    value_type=ValueType.STRING,
    description="A person, keyed by date of birth and last four SSN digits.",
)

zipcode = Entity(
    name="zipcode",
    join_keys=[ZIPCODE.name],
    value_type=ValueType.INT64,
    description="The applicant's home zipcode.",
)
