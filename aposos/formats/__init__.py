"""Exchange formats: CCSDS TDM (KVN, XML) and IOD; :mod:`aposos.formats.readers` picks one."""
