"""A deterministic, realistic grocery catalog for the demo and the benchmarks.

Each category has signature product lines (brand, base name, fixed attributes), variants that
add words and attributes, and sizes; regional brands fill the long tail. The same seed and size
always give the same catalog.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shared.domain.catalog import Product

PLANT = ("vegan", "plant-based", "dairy-free")


@dataclass(frozen=True)
class CategorySpec:
    department: str
    category: str
    unit: str
    sizes: tuple[float, ...]
    price: tuple[float, float]  # typical price range for the smallest size
    lines: tuple[tuple[str, str, tuple[str, ...]], ...]  # brand, base name, attributes
    variants: tuple[tuple[str, tuple[str, ...]], ...]  # leading words, attributes they add


def _v(*pairs: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Variants written as 'Words:attr1|attr2' strings."""
    out = []
    for pair in pairs:
        words, _, attrs = pair.partition(":")
        out.append((words, tuple(a for a in attrs.split("|") if a)))
    return tuple(out)


SPECS: tuple[CategorySpec, ...] = (
    CategorySpec(
        "dairy & eggs",
        "milk",
        "gal",
        (0.5, 1.0),
        (2.5, 6.5),
        (
            ("Oatly", "Oat Milk", PLANT),
            ("Silk", "Almond Milk", PLANT),
            ("Califia", "Oat Milk", PLANT),
            ("Horizon", "Whole Milk", ("organic",)),
            ("Organic Valley", "2% Milk", ("organic",)),
            ("Fairlife", "Ultra-Filtered Milk", ("high-protein", "lactose-free")),
            ("Lactaid", "Whole Milk", ("lactose-free",)),
            ("Borden", "Whole Milk", ()),
            ("Darigold", "Skim Milk", ()),
        ),
        _v(
            "", "Barista Edition:", "Unsweetened:sugar-free", "Vanilla:", "Chocolate:", "Organic:organic", "Local:local"
        ),
    ),
    CategorySpec(
        "dairy & eggs",
        "yogurt",
        "oz",
        (5.3, 24.0, 32.0),
        (1.0, 6.0),
        (
            ("Oatly", "Oatgurt Plant-Based Yogurt", PLANT),
            ("Silk", "Almond Milk Yogurt", PLANT),
            ("So Delicious", "Coconut Yogurt", PLANT),
            ("Kite Hill", "Almond Yogurt", PLANT),
            ("Chobani", "Greek Yogurt", ("high-protein",)),
            ("Fage", "Greek Yogurt", ("high-protein",)),
            ("Yoplait", "Original Yogurt", ()),
            ("Stonyfield", "Whole Milk Yogurt", ("organic",)),
            ("Dannon", "Yogurt", ()),
            ("Siggi's", "Skyr Yogurt", ("high-protein",)),
        ),
        _v("Plain:", "Vanilla:", "Strawberry:", "Blueberry:", "Peach:", "Honey:", "Mixed Berry:", "Organic:organic"),
    ),
    CategorySpec(
        "dairy & eggs",
        "cheese",
        "oz",
        (6.0, 8.0, 16.0),
        (2.5, 9.0),
        (
            ("Tillamook", "Cheddar Cheese", ()),
            ("Kraft", "Shredded Mozzarella", ()),
            ("Cabot", "Sharp Cheddar", ()),
            ("Violife", "Plant-Based Cheese Slices", PLANT),
            ("Daiya", "Cheddar Style Shreds", PLANT),
            ("Organic Valley", "Colby Jack", ("organic",)),
            ("BelGioioso", "Parmesan", ()),
        ),
        _v("", "Sliced:", "Shredded:", "Block:", "Pepper Jack:spicy", "Smoked:", "Reduced Fat:low-fat"),
    ),
    CategorySpec(
        "dairy & eggs",
        "eggs",
        "ct",
        (12.0, 18.0, 24.0),
        (2.5, 7.0),
        (
            ("Vital Farms", "Pasture-Raised Eggs", ("organic", "free-range")),
            ("Eggland's Best", "Large Eggs", ()),
            ("Pete and Gerry's", "Organic Eggs", ("organic", "free-range")),
            ("Happy Egg", "Free Range Eggs", ("free-range",)),
            ("Just Egg", "Plant-Based Egg", PLANT),
        ),
        _v("Large Brown:", "Large White:", "Jumbo:", "Local:local"),
    ),
    CategorySpec(
        "dairy & eggs",
        "butter",
        "oz",
        (8.0, 16.0),
        (3.0, 7.0),
        (
            ("Kerrygold", "Grass-Fed Butter", ()),
            ("Land O Lakes", "Butter", ()),
            ("Earth Balance", "Buttery Spread", PLANT),
            ("Miyoko's", "Cultured Vegan Butter", PLANT),
            ("Organic Valley", "Salted Butter", ("organic",)),
        ),
        _v("Salted:", "Unsalted:", "Spreadable:", "Garlic Herb:"),
    ),
    CategorySpec(
        "snacks",
        "chips",
        "oz",
        (5.0, 8.0, 13.0),
        (2.0, 5.5),
        (
            ("Lay's", "Potato Chips", ("gluten-free",)),
            ("Doritos", "Tortilla Chips", ()),
            ("Kettle Brand", "Potato Chips", ("gluten-free",)),
            ("Cape Cod", "Kettle Chips", ("gluten-free",)),
            ("Takis", "Rolled Tortilla Chips", ("spicy",)),
            ("Late July", "Organic Tortilla Chips", ("organic", "gluten-free")),
            ("Utz", "Potato Chips", ()),
        ),
        _v(
            "Original:",
            "Classic Sea Salt:",
            "Flamin' Hot:spicy",
            "Jalapeno:spicy",
            "Spicy Habanero:spicy",
            "Chili Lime:spicy",
            "Sour Cream & Onion:",
            "BBQ:",
            "Salt & Vinegar:",
            "Lightly Salted:low-sodium",
        ),
    ),
    CategorySpec(
        "snacks",
        "crackers",
        "oz",
        (6.0, 10.0),
        (2.5, 5.0),
        (
            ("Triscuit", "Whole Grain Crackers", ("whole-grain",)),
            ("Ritz", "Crackers", ()),
            ("Simple Mills", "Almond Flour Crackers", ("gluten-free",)),
            ("Mary's Gone", "Seed Crackers", ("gluten-free", "vegan", "organic")),
            ("Wheat Thins", "Crackers", ("whole-grain",)),
        ),
        _v("Original:", "Rosemary:", "Cracked Pepper:", "Cheddar:", "Everything:"),
    ),
    CategorySpec(
        "snacks",
        "nuts",
        "oz",
        (8.0, 16.0),
        (4.0, 11.0),
        (
            ("Blue Diamond", "Almonds", ("vegan", "gluten-free")),
            ("Planters", "Peanuts", ("gluten-free",)),
            ("Wonderful", "Pistachios", ("vegan", "gluten-free")),
            ("Sahale", "Glazed Nut Mix", ()),
        ),
        _v("Roasted Salted:", "Unsalted:low-sodium", "Smokehouse:", "Spicy Chili:spicy", "Honey Roasted:"),
    ),
    CategorySpec(
        "bakery",
        "bread",
        "oz",
        (16.0, 24.0),
        (2.5, 7.0),
        (
            ("Dave's Killer Bread", "Organic Bread", ("organic", "whole-grain")),
            ("Nature's Own", "Bread", ()),
            ("Canyon Bakehouse", "Gluten-Free Bread", ("gluten-free",)),
            ("Ezekiel", "Sprouted Grain Bread", ("vegan", "whole-grain")),
            ("Local Bakery", "Sourdough Loaf", ("local",)),
            ("Pepperidge Farm", "Bread", ()),
        ),
        _v("White:", "Whole Wheat:whole-grain", "Multigrain:whole-grain", "Seeded:", "Cinnamon Raisin:"),
    ),
    CategorySpec(
        "produce",
        "fruit",
        "lb",
        (1.0, 2.0, 3.0),
        (1.0, 5.0),
        (
            ("Fresh Farms", "Bananas", ("vegan",)),
            ("Fresh Farms", "Apples", ("vegan",)),
            ("Driscoll's", "Strawberries", ("vegan",)),
            ("Sunkist", "Oranges", ("vegan",)),
            ("Wonderful", "Avocados", ("vegan",)),
            ("Local Orchard", "Pears", ("vegan", "local")),
        ),
        _v("", "Organic:organic", "Local:local", "Family Pack:"),
    ),
    CategorySpec(
        "produce",
        "vegetables",
        "lb",
        (0.5, 1.0, 2.0),
        (1.0, 4.5),
        (
            ("Fresh Farms", "Baby Spinach", ("vegan",)),
            ("Fresh Farms", "Broccoli Crowns", ("vegan",)),
            ("Earthbound Farm", "Spring Mix", ("vegan",)),
            ("Green Giant", "Carrots", ("vegan",)),
            ("Local Farm", "Tomatoes", ("vegan", "local")),
            ("Fresh Farms", "Jalapeno Peppers", ("vegan", "spicy")),
        ),
        _v("", "Organic:organic", "Local:local", "Washed & Ready:"),
    ),
    CategorySpec(
        "meat & seafood",
        "chicken",
        "lb",
        (1.0, 2.0, 3.0),
        (4.0, 12.0),
        (
            ("Perdue", "Chicken Breast", ("high-protein",)),
            ("Bell & Evans", "Chicken Thighs", ("high-protein",)),
            ("Smart Chicken", "Whole Chicken", ()),
            ("Applegate", "Chicken Sausage", ()),
        ),
        _v("Boneless:", "Organic:organic", "Free Range:free-range", "Buffalo Style:spicy", "Lemon Herb:"),
    ),
    CategorySpec(
        "meat & seafood",
        "plant-based protein",
        "oz",
        (8.0, 16.0),
        (3.5, 8.0),
        (
            ("Beyond Meat", "Plant-Based Burger", PLANT),
            ("Impossible", "Plant-Based Ground", PLANT),
            ("Tofurky", "Plant-Based Sausage", PLANT),
            ("Nasoya", "Organic Tofu", (*PLANT, "organic")),
        ),
        _v("Original:", "Spicy:spicy", "Italian Style:", "Smoked:"),
    ),
    CategorySpec(
        "pantry",
        "pasta",
        "oz",
        (12.0, 16.0),
        (1.0, 4.0),
        (
            ("Barilla", "Pasta", ("vegan",)),
            ("Banza", "Chickpea Pasta", ("gluten-free", "high-protein", "vegan")),
            ("De Cecco", "Pasta", ("vegan",)),
            ("Jovial", "Brown Rice Pasta", ("gluten-free", "organic", "vegan")),
        ),
        _v("Spaghetti:", "Penne:", "Rotini:", "Fusilli:", "Whole Wheat Spaghetti:whole-grain"),
    ),
    CategorySpec(
        "pantry",
        "sauces",
        "oz",
        (16.0, 24.0),
        (2.0, 8.0),
        (
            ("Rao's", "Marinara Sauce", ("vegan",)),
            ("Prego", "Pasta Sauce", ()),
            ("Cholula", "Hot Sauce", ("spicy", "vegan")),
            ("Frank's RedHot", "Hot Sauce", ("spicy",)),
            ("Primal Kitchen", "Avocado Mayo", ("dairy-free",)),
        ),
        _v("Original:", "Arrabbiata:spicy", "Garlic:", "Organic:organic", "Roasted Pepper:"),
    ),
    CategorySpec(
        "pantry",
        "cereal",
        "oz",
        (10.0, 18.0),
        (3.0, 6.5),
        (
            ("Cheerios", "Cereal", ("whole-grain",)),
            ("Kashi", "Cereal", ("whole-grain", "organic")),
            ("Nature's Path", "Granola", ("organic", "vegan")),
            ("Kellogg's", "Corn Flakes", ()),
            ("Bob's Red Mill", "Gluten-Free Oats", ("gluten-free", "vegan")),
        ),
        _v("Original:", "Honey Nut:", "Cinnamon:", "Berry:", "Protein:high-protein"),
    ),
    CategorySpec(
        "pantry",
        "coffee",
        "oz",
        (12.0, 24.0),
        (6.0, 14.0),
        (
            ("Starbucks", "Ground Coffee", ("vegan",)),
            ("Peet's", "Whole Bean Coffee", ("vegan",)),
            ("Stumptown", "Whole Bean Coffee", ("vegan", "local")),
            ("Folgers", "Ground Coffee", ("vegan",)),
        ),
        _v("Medium Roast:", "Dark Roast:", "Decaf:", "Organic:organic", "French Roast:"),
    ),
    CategorySpec(
        "beverages",
        "juice",
        "fl oz",
        (32.0, 52.0, 64.0),
        (2.5, 7.0),
        (
            ("Tropicana", "Orange Juice", ("vegan",)),
            ("Simply", "Lemonade", ("vegan",)),
            ("Suja", "Cold-Pressed Juice", ("organic", "vegan")),
            ("Martinelli's", "Apple Juice", ("vegan",)),
        ),
        _v("Original:", "No Pulp:", "Low Sugar:sugar-free", "Organic:organic"),
    ),
    CategorySpec(
        "beverages",
        "sparkling water",
        "fl oz",
        (12.0, 144.0),
        (1.0, 6.5),
        (
            ("LaCroix", "Sparkling Water", ("vegan", "sugar-free")),
            ("Spindrift", "Sparkling Water", ("vegan",)),
            ("Topo Chico", "Mineral Water", ("vegan", "sugar-free")),
            ("Bubly", "Sparkling Water", ("vegan", "sugar-free")),
        ),
        _v("Lime:", "Grapefruit:", "Lemon:", "Original:", "Mango:"),
    ),
    CategorySpec(
        "frozen",
        "ice cream",
        "oz",
        (16.0, 48.0),
        (3.5, 7.5),
        (
            ("Ben & Jerry's", "Ice Cream", ()),
            ("Häagen-Dazs", "Ice Cream", ()),
            ("Oatly", "Frozen Oat Dessert", PLANT),
            ("So Delicious", "Cashew Frozen Dessert", PLANT),
            ("Halo Top", "Light Ice Cream", ("low-fat",)),
        ),
        _v("Vanilla:", "Chocolate:", "Cookie Dough:", "Strawberry:", "Mint Chip:"),
    ),
    CategorySpec(
        "frozen",
        "frozen meals",
        "oz",
        (9.0, 16.0),
        (3.0, 8.0),
        (
            ("Amy's", "Burrito", ("vegan", "organic")),
            ("Evol", "Bowl", ()),
            ("Healthy Choice", "Power Bowl", ("high-protein",)),
            ("Trader's Table", "Pad Thai", ("spicy",)),
        ),
        _v("Classic:", "Spicy:spicy", "Gluten Free:gluten-free", "Family Size:"),
    ),
)

REGIONAL_BRANDS = (
    "Green Valley",
    "Sunny Acres",
    "Harvest Table",
    "Blue Ridge",
    "Prairie Gold",
    "Coastline",
    "Maple Grove",
    "Red Barn",
    "Little Creek",
    "Golden Fields",
    "North Star",
    "Cedar Hollow",
    "Good & Gather",
    "Simple Truth",
    "365 Everyday",
    "Kirkland",
    "Great Value",
    "Market Pantry",
    "Hillside",
    "Riverbend",
    "Oak Meadow",
    "Silver Lake",
    "Pine Valley",
    "Sunrise Farms",
    "Stone Mill",
    "Willow Creek",
    "Bay Harbor",
    "Copper Kettle",
    "Wild Meadow",
    "High Plains",
    "Morning Dew",
    "Lakeshore",
    "Evergreen",
    "Honey Hill",
    "Clear Spring",
    "Twin Oaks",
    "Valley Fresh",
    "Grandview",
    "Orchard Lane",
    "Summit Foods",
)
REGIONAL_ATTRIBUTES = ("organic", "local", "gluten-free", "vegan", "low-sodium", "sugar-free")
PACKS = ("", "2-Pack", "4-Pack", "Family Size", "Value Pack")


def _candidates(spec: CategorySpec):
    lines = list(spec.lines) + [
        (brand, *spec.lines[i % len(spec.lines)][1:]) for i, brand in enumerate(REGIONAL_BRANDS)
    ]
    for line in lines:
        for variant in spec.variants:
            for size_index in range(len(spec.sizes)):
                for pack in PACKS:
                    yield line, variant, size_index, pack


def generate_catalog(size: int = 5_000, seed: int = 7) -> list[Product]:
    """`size` products spread over every category, with realistic names, attributes and prices."""
    rng = random.Random(seed)
    per_spec = [list(_candidates(spec)) for spec in SPECS]
    capacity = sum(len(c) for c in per_spec)
    if size > capacity:
        raise ValueError(f"the generator can make at most {capacity} distinct products")
    picks: list[tuple[CategorySpec, tuple]] = []
    # Signature lines first so every catalog size has the well-known products.
    for spec, candidates in zip(SPECS, per_spec, strict=True):
        first = [c for c in candidates if c[1] == spec.variants[0] and c[2] == 0 and c[3] == "" and c[0] in spec.lines]
        picks.extend((spec, c) for c in first)
    chosen = {(s.category, c) for s, c in picks}
    rest = [(spec, c) for spec, cs in zip(SPECS, per_spec, strict=True) for c in cs if (spec.category, c) not in chosen]
    rng.shuffle(rest)
    picks = (picks + rest)[:size]
    return [_product(i, spec, candidate, rng) for i, (spec, candidate) in enumerate(picks)]


def _product(index: int, spec: CategorySpec, candidate, rng: random.Random) -> Product:
    (brand, base, line_attrs), (words, variant_attrs), size_index, pack = candidate
    attrs = set(line_attrs) | set(variant_attrs)
    if brand in REGIONAL_BRANDS and rng.random() < 0.5:
        attrs.add(rng.choice(REGIONAL_ATTRIBUTES))
    size = spec.sizes[size_index]
    low, high = spec.price
    price = rng.uniform(low, high) * (1 + 0.6 * size_index) * (1.8 if pack else 1.0)
    if "organic" in attrs:
        price *= 1.25
    name = " ".join(part for part in (brand, words, base, pack) if part)
    return Product(
        id=f"p{index:05d}",
        name=f"{name}, {size:g} {spec.unit}",
        brand=brand,
        category=spec.category,
        department=spec.department,
        attributes=tuple(sorted(attrs)),
        price=round(price, 2),
        size=size,
        unit=spec.unit,
    )
