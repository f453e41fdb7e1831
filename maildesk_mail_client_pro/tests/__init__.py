from . import test_basic_contract
