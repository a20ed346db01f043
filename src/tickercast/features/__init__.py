"""What a feature is: the rules, the exchange calendar, the window indicators and sentiment.

Every stage that computes or reads features (the Spark job, the incremental path, ``POST
/forecast``, training and serving) calls these modules, so each formula has one home.
"""
