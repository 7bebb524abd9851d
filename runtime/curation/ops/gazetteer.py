"""Common English given names: caption_pii's person-name gazetteer (runtime/curation/ops/pii.py).

Written by hand for genspec: frequent given names in the English-speaking world, chosen to overlap the
most popular names of the US Social Security Administration's baby-name tables
(https://www.ssa.gov/oact/babynames/) across the decades of adults pictured today; not copied from them.

Left out on purpose: names that are also common English words or place names (Rose, Grace, Hope, Joy,
April, May, June, Summer, Dawn, Ivy, Lily, Daisy, Hunter, Mason, Chase, Austin, Dallas, Paris, Sydney,
Georgia, Virginia, Victoria, Florence, Jordan, Washington), because a caption's "Rose Garden" or
"Victoria Station" would otherwise be redacted as a person.
"""

from __future__ import annotations

GIVEN_NAMES = frozenset({
    # women
    "Abigail", "Alice", "Alexandra", "Alexis", "Allison", "Alyssa", "Amanda", "Amber", "Amelia", "Amy", "Andrea",
    "Angela", "Ann", "Anna", "Anne", "Ashley", "Audrey", "Ava", "Barbara", "Betty", "Brenda", "Brittany",
    "Carol", "Caroline", "Catherine", "Charlotte", "Cheryl", "Chloe", "Christina", "Christine", "Claire",
    "Cynthia", "Deborah", "Debra", "Denise", "Diana", "Diane", "Donna", "Doris", "Dorothy", "Eleanor",
    "Elizabeth", "Ella", "Ellie", "Emily", "Emma", "Evelyn", "Frances", "Gloria", "Hannah", "Harper", "Heather",
    "Helen", "Isabella", "Jacqueline", "Janet", "Janice", "Jane", "Jean", "Jennifer", "Jessica", "Joan", "Joyce",
    "Judith", "Judy", "Julia", "Julie", "Karen", "Katherine", "Kathleen", "Kathryn", "Kayla", "Kelly",
    "Kimberly", "Laura", "Lauren", "Linda", "Lisa", "Lori", "Madison", "Margaret", "Maria", "Marie", "Marilyn",
    "Martha", "Mary", "Megan", "Melissa", "Mia", "Michelle", "Mila", "Nancy", "Natalie", "Nicole", "Olivia",
    "Pamela", "Patricia", "Rachel", "Rebecca", "Ruth", "Samantha", "Sandra", "Sara", "Sarah", "Scarlett",
    "Sharon", "Shirley", "Sophia", "Sophie", "Stephanie", "Susan", "Teresa", "Theresa", "Tiffany", "Valerie",
    "Vanessa", "Wendy", "Zoe",
    # men
    "Aaron", "Adam", "Alan", "Albert", "Alexander", "Andrew", "Anthony", "Arthur", "Benjamin", "Bobby", "Brandon",
    "Brian", "Bruce", "Bryan", "Carl", "Charles", "Christian", "Christopher", "Daniel", "David", "Dennis",
    "Donald", "Douglas", "Dylan", "Edward", "Elijah", "Eric", "Ethan", "Eugene", "Frank", "Gabriel", "Gary",
    "George", "Gerald", "Gregory", "Harold", "Harry", "Henry", "Isaac", "Jack", "Jacob", "James", "Jason",
    "Jeffrey", "Jeremy", "Jerry", "Jesse", "Joe", "John", "Jonathan", "Joseph", "Joshua", "Juan", "Justin",
    "Keith", "Kenneth", "Kevin", "Kyle", "Larry", "Lawrence", "Liam", "Logan", "Louis", "Lucas", "Luke",
    "Mark", "Martin", "Matthew", "Michael", "Nathan", "Nicholas", "Noah", "Oliver", "Patrick", "Paul", "Peter",
    "Philip", "Ralph", "Raymond", "Richard", "Robert", "Roger", "Ronald", "Russell", "Ryan", "Samuel", "Scott",
    "Sean", "Stephen", "Steven", "Terry", "Thomas", "Timothy", "Tyler", "Walter", "Wayne", "William", "Willie",
    "Zachary",
})
