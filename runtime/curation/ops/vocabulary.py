"""Word lists that synthetic_text draws its rendered text from, one per language it can render.

Written for genspec: everyday words and short phrases of the kind seen on signs, menus, posters and
notices, so rendered samples look like text in the wild. Chinese entries are Simplified Chinese words
and set phrases (two to four characters); Chinese is written without spaces between words.
"""

from __future__ import annotations

ENGLISH = (
    "open", "daily", "fresh", "coffee", "market", "river", "north", "station", "garden", "quiet", "morning",
    "light", "city", "library", "museum", "bakery", "welcome", "exit", "entrance", "platform", "ticket", "harbor",
    "bridge", "mountain", "trail", "summer", "winter", "festival", "orange", "blue", "green", "silver", "golden",
    "house", "school", "office", "hotel", "cinema", "pharmacy", "bicycle", "parking", "limited", "offer", "sale",
    "new", "classic", "modern", "simple", "bright", "warm", "cold", "fast", "slow", "east", "west", "south",
    "central", "park", "street", "avenue", "square", "tower", "castle", "island", "valley", "forest", "ocean",
    "bread", "cheese", "apple", "honey", "tea", "juice", "menu", "lunch", "dinner", "breakfast", "special",
    "today", "tomorrow", "always", "never", "every", "weekend", "holiday", "notice", "please", "thank", "you",
    "quality", "service", "repair", "design", "studio", "gallery", "music", "theater", "dance", "art", "craft",
    "books", "maps", "travel", "guide",
)

CHINESE = (
    # shops, places and signs
    "欢迎光临", "营业中", "出口", "入口", "车站", "站台", "售票处", "停车场", "图书馆", "博物馆", "医院", "药店",
    "银行", "超市", "市场", "书店", "花店", "面包店", "咖啡馆", "茶馆", "餐厅", "饭店", "酒店", "学校", "公园",
    "广场", "大街", "小巷", "路口", "地铁", "公交站", "机场", "码头", "电影院", "剧院", "体育馆", "游泳池",
    "洗手间", "禁止吸烟", "请勿触摸", "小心地滑", "安全出口", "注意安全", "闲人免进", "请排队", "谢谢合作",
    # food and drink
    "牛肉面", "小笼包", "饺子", "米饭", "炒饭", "豆浆", "油条", "包子", "火锅", "烧烤", "绿茶", "红茶", "奶茶",
    "果汁", "蛋糕", "月饼", "水果", "新鲜", "美味", "好吃", "特价", "套餐", "早餐", "午餐", "晚餐", "菜单",
    # nature, seasons, colours
    "春天", "夏天", "秋天", "冬天", "山水", "河流", "大海", "森林", "花园", "月亮", "太阳", "星空", "白云",
    "红色", "蓝色", "绿色", "金色", "黄色", "黑色", "白色",
    # everyday words and phrases
    "你好", "再见", "谢谢", "欢迎", "中国", "北京", "上海", "城市", "生活", "时间", "今天", "明天", "周末",
    "节日", "快乐", "新年快乐", "生日快乐", "恭喜发财", "万事如意", "一路平安", "天天向上", "好好学习",
    "开业大吉", "限时优惠", "全场五折", "买一送一", "新品上市", "免费", "服务", "质量", "设计", "艺术", "音乐",
    "电影", "旅行", "地图", "指南", "朋友", "家庭", "工作", "学习", "运动", "健康", "科学", "技术", "未来",
    "东", "西", "南", "北", "中心", "第一", "最新", "经典", "现代", "简单",
)
