# Pro extends Basic only through ORM inheritance of its hooks (DESIGN §1).
# Its features land with their own issues; until then it adds no model.
